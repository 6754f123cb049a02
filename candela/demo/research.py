"""Demo step (placeholder until its issue lands)."""

TITLE = "research"


def run(context) -> None:
    print("(not built yet)")
