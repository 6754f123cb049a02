"""Demo step (placeholder until its issue lands)."""

TITLE = "paper"


def run(context) -> None:
    print("(not built yet)")
