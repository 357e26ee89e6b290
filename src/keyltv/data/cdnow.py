"""The CDNOW transaction log bundled with lifetimes, used as the demo data.

CDNOW_master.txt: 69,659 purchases by the 23,570 customers who first bought at CDNOW in
the first quarter of 1997, followed to the end of June 1998 (Fader, Hardie and Lee
2005). It ships inside the lifetimes wheel, so it is read from the installed package:
no download, no copy in this repository.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

# The usual split in the literature: 39 weeks of calibration, 39 weeks of holdout.
CALIBRATION_END = "1997-10-01"
HOLDOUT_DAYS = 273


def cdnow_path() -> str:
    """Path of ``CDNOW_master.txt`` inside the installed lifetimes package."""
    return str(resources.files("lifetimes") / "datasets" / "CDNOW_master.txt")


def load_cdnow() -> pd.DataFrame:
    """Read the full CDNOW log in keyltv's column contract.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` (zero-padded string), ``date`` (datetime64), ``amount``
        (dollars), ``quantity`` (CDs). One row per purchase record.

    References
    ----------
    Fader, P. S., Hardie, B. G. S., Lee, K. L. (2005). "Counting Your Customers" the Easy
    Way: An Alternative to the Pareto/NBD Model. Marketing Science 24(2).
    """
    frame = pd.read_csv(
        cdnow_path(),
        sep=r"\s+",
        header=0,
        names=["customer_id", "date", "quantity", "amount"],
        dtype={"customer_id": str, "date": str},
    )
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    return frame[["customer_id", "date", "amount", "quantity"]]
