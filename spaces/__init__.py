"""Built-in search-space families. Importing this package registers them."""
from spaces import synthetic  # noqa: F401
from spaces import vit  # noqa: F401
from spaces import hybrid  # noqa: F401
