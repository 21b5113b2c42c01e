"""Host stages: string and table preprocessing, and ops whose output shapes follow input
values, run with numpy before the device call.

See :mod:`jaxhub._src.host.program` for the stored form and :mod:`jaxhub._src.host.ops` for
the ops; :mod:`jaxhub._src.host.registry` is the op table that the TF graph converter uses
too (through :mod:`jaxhub.extend`).

The op families live in their own modules, each registering into the table of
:mod:`jaxhub._src.host.ops`: :mod:`~jaxhub._src.host.ragged` (ragged tensors as row
splits), :mod:`~jaxhub._src.host.sparse` (sparse tensors: empty rows filled, set
operations), :mod:`~jaxhub._src.host.text` (tensorflow_text's normalisers and tokenizers) and
:mod:`~jaxhub._src.host.sentencepiece` (tensorflow_text's SentencePiece ops).
Importing the package registers them all.
"""

from jaxhub._src.host.limits import HostLimits as HostLimits
from jaxhub._src.host.program import ATTACHMENT_KEY as ATTACHMENT_KEY
from jaxhub._src.host.program import AssetStore as AssetStore
from jaxhub._src.host.program import HostStage as HostStage
from jaxhub._src.host.program import HostStageError as HostStageError

# The op families: imported for their registrations.
from jaxhub._src.host import arrays as _arrays  # noqa: F401,E402
from jaxhub._src.host import ragged as _ragged  # noqa: F401,E402
from jaxhub._src.host import sentencepiece as _sentencepiece  # noqa: F401,E402
from jaxhub._src.host import sparse as _sparse  # noqa: F401,E402
from jaxhub._src.host import text as _text  # noqa: F401,E402
