from .attribute_head import AttributeHead
from .csm_head import CSMHead
from .csr_head import CSRHead, patchify, unpatchify
from .css_head import CSSHead
from .distill_head import DistillHead
from .reid_head import ReIDHead

__all__ = ['AttributeHead', 'CSMHead', 'CSRHead', 'CSSHead', 'DistillHead', 'ReIDHead', 'patchify',
           'unpatchify']
