"""Risk control in the admin: lists, rules and thresholds (tuned without a
deploy), purchase limits, assessments, the review queue and desk, and the
block-buyer page. Importing the modules registers their ModelAdmins (Django's
autodiscovery imports ``riskctl.admin``)."""

from riskctl.admin import assessments, lists, reviews, rules  # noqa: F401
