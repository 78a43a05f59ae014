"""A tool whose parameter the schema cannot take."""

from pyvisor_worker import tool


class Image:
    pass


@tool
def classify(image: Image) -> str:
    return "cat"
