"""Built-in search-space families. Importing this package registers them."""
from spaces import synthetic  # noqa: F401
from spaces import nb201  # noqa: F401
