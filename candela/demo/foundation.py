"""Demo step (placeholder until its issue lands)."""

TITLE = "foundation"


def run(context) -> None:
    print("(not built yet)")
