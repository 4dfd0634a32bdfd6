"""Review: cases, search, supervised retrieval, access supervision, retention, verification reports."""
