"""Common signatures: conventions for image and text-embedding modules (as TF Hub's).

The publisher's helpers return the spec and attachments to pass to
:func:`jaxhub.create_module`; the consumer's helpers read a module's expectations back.
"""

from jaxhub._src.common_signatures import get_embedding_dim as get_embedding_dim
from jaxhub._src.common_signatures import get_expected_image_size as get_expected_image_size
from jaxhub._src.common_signatures import get_num_image_channels as get_num_image_channels
from jaxhub._src.common_signatures import image_input as image_input
from jaxhub._src.common_signatures import takes_text as takes_text
from jaxhub._src.common_signatures import text_embedding_input as text_embedding_input

__all__ = (
    "get_embedding_dim",
    "get_expected_image_size",
    "get_num_image_channels",
    "image_input",
    "takes_text",
    "text_embedding_input",
)
