"""The review page: pending model approvals, decided by people signed in through the authenticating proxy."""
