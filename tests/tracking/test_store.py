import pytest

from keyltv.data.schema import InputError
from keyltv.tracking.store import check_store_exists, sqlite_file


@pytest.mark.parametrize(("uri", "path"), [
    ("sqlite:///mlflow.db", "mlflow.db"),
    ("sqlite:////srv/ml/mlflow.db", "/srv/ml/mlflow.db"),
    ("sqlite:///:memory:", None),
    ("http://127.0.0.1:5000", None),
    ("postgresql://u:p@db/mlflow", None),
])
def test_sqlite_file_is_the_database_path_of_a_sqlite_uri(uri, path):
    found = sqlite_file(uri)
    assert (str(found) if found is not None else None) == path


def test_a_missing_sqlite_store_is_refused_without_creating_it(tmp_path):
    db = tmp_path / "mlflow.db"
    with pytest.raises(InputError, match="does not exist, so no model is registered"):
        check_store_exists(f"sqlite:///{db}")
    assert not db.exists()
    db.touch()
    check_store_exists(f"sqlite:///{db}")  # an existing file is left to MLflow


def test_sigterm_is_held_during_a_store_write_and_delivered_after():
    import os
    import signal
    import threading
    import time

    from keyltv.tracking.store import sigterm_held

    class Stop(BaseException):
        pass

    def stop(signum, frame):
        raise Stop()

    # Another live thread, as DuckDB's and LightGBM's are in the CLI: the kernel may hand
    # it the process's signal (blocking SIGTERM in the main thread alone did not hold it).
    other = threading.Event()
    thread = threading.Thread(target=other.wait, daemon=True)
    thread.start()
    before = signal.signal(signal.SIGTERM, stop)
    finished = False
    try:
        with pytest.raises(Stop):
            with sigterm_held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)  # time for a handler to run, were it not held
                finished = True  # the write is not cut in the middle
    finally:
        signal.signal(signal.SIGTERM, before)
        other.set()
    assert finished


def test_models_pickled_before_the_pyfunc_module_existed_still_unpickle():
    # Registered versions name the class where it used to live (a pickle stores the path).
    import pickle

    from keyltv.tracking.pyfunc import KeyLTVPyfunc

    assert pickle.loads(b"ckeyltv.tracking.store\nKeyLTVPyfunc\n.") is KeyLTVPyfunc


def _connect_and_name(uri: str) -> str:
    from keyltv.tracking.store import connect

    return connect(uri, "keyltv", "keyltv").experiment_id


def test_jobs_creating_one_new_store_at_once_share_it_and_leave_no_temporary_file(tmp_path):
    # MLflow builds a new store's tables in some twenty migrations: two jobs running them
    # together on one file failed with SQL errors, and a job stopped among them left a
    # store no later job could open (audit 28). Each builds its own file and links it.
    import multiprocessing

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        # A timeout: a pool whose worker dies waits for it for ever.
        ids = pool.map_async(_connect_and_name, [uri, uri]).get(timeout=120)
    assert ids[0] == ids[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
    assert [e.name for e in MlflowClient(uri).search_experiments()].count("keyltv") == 1


def test_a_store_whose_creation_was_stopped_leaves_nothing_behind(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from keyltv.tracking import store

    class Stop(BaseException):
        pass

    def stopped(self, *args, **kwargs):
        raise Stop()

    monkeypatch.setattr(MlflowClient, "search_experiments", stopped)
    with pytest.raises(Stop):
        store._create_sqlite_store(tmp_path / "mlflow.db")
    assert list(tmp_path.iterdir()) == []
