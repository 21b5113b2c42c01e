"""Host stages: string and table preprocessing that runs with numpy before the device call.

See :mod:`jaxhub.host.program` for the stored form and :mod:`jaxhub.host.ops` for the ops;
:mod:`jaxhub.host.registry` is the op table that the TF graph converter uses too.
"""

from jaxhub.host.limits import HostLimits as HostLimits
from jaxhub.host.program import ATTACHMENT_KEY as ATTACHMENT_KEY
from jaxhub.host.program import AssetStore as AssetStore
from jaxhub.host.program import HostStage as HostStage
from jaxhub.host.program import HostStageError as HostStageError
