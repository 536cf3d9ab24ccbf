"""`pilothouse bench decision`: one scheduling decision at scale."""
