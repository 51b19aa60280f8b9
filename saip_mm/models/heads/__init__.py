from .csm_head import CSMHead
from .csr_head import CSRHead, patchify, unpatchify
from .css_head import CSSHead

__all__ = ['CSMHead', 'CSRHead', 'CSSHead', 'patchify', 'unpatchify']
