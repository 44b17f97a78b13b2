"""The probe's version, sent in every hello line."""

VERSION = "0.1.0"
