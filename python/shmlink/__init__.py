"""placeholder"""
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
from ._shmlink import _Channel, Message
