"""`pilothouse bench overhead` and `bench transport`: the gateway's own cost."""
