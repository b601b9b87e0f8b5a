"""The checks behind vesyncctl doctor."""
