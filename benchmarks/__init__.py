"""`make bench`: each benchmark measures our figure beside an anchor's and reports the ratio."""
