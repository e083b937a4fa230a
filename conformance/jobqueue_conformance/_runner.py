def run(url: str) -> int:
    raise NotImplementedError
