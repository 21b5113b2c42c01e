"""Common signatures: conventions for image and text-embedding modules (as TF Hub's).

The publisher's helpers return the spec and attachments to pass to
:func:`jaxhub.create_module`; the consumer's helpers read a module's expectations back.
"""

from jaxhub._src.common_signatures import EMBEDDING_DIM as EMBEDDING_DIM
from jaxhub._src.common_signatures import IMAGE_CHANNELS as IMAGE_CHANNELS
from jaxhub._src.common_signatures import IMAGE_SIZE as IMAGE_SIZE
from jaxhub._src.common_signatures import IMAGE_VALUE_RANGE as IMAGE_VALUE_RANGE
from jaxhub._src.common_signatures import get_embedding_dim as get_embedding_dim
from jaxhub._src.common_signatures import get_expected_image_size as get_expected_image_size
from jaxhub._src.common_signatures import get_num_image_channels as get_num_image_channels
from jaxhub._src.common_signatures import image_input as image_input
from jaxhub._src.common_signatures import takes_text as takes_text
from jaxhub._src.common_signatures import text_embedding_input as text_embedding_input

__all__ = (
    "EMBEDDING_DIM",
    "IMAGE_CHANNELS",
    "IMAGE_SIZE",
    "IMAGE_VALUE_RANGE",
    "get_embedding_dim",
    "get_expected_image_size",
    "get_num_image_channels",
    "image_input",
    "takes_text",
    "text_embedding_input",
)
