"""nerfstudio MethodSpecifications of this package (installed as ``nerf_loe.method_configs``).

Importing this package is what ``ns-*`` commands do to discover the plugin; it also applies the
nerfstudio 1.1.5 compatibility fixes (:func:`nerf_loe.compat.install`).
"""

from nerf_loe.compat import install as _install_compat

_install_compat()
