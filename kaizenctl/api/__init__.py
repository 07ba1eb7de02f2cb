"""The API service layer: every URL and wire shape of Kaizen Studio lives under this package."""
