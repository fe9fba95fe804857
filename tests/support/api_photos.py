"""schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.support.api_photos``): what the image fields
of POST /api/segment hold in tests/integration/test_openapi.py. The description labels them
``image/*, application/octet-stream``; labelled image/jpeg, a field holds one of the page's
sample photos, whole (so the model really segments it) or cut short; labelled
application/octet-stream, random bytes."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from tests.support.images import SAMPLE_PHOTOS

whole = st.sampled_from(SAMPLE_PHOTOS)
cut_short = whole.flatmap(lambda photo: st.integers(0, len(photo) - 1).map(lambda n: photo[:n]))
schemathesis.openapi.media_type("image/jpeg", st.one_of(whole, whole, cut_short))
schemathesis.openapi.media_type("application/octet-stream", st.binary(max_size=4096))
