"""What verifying a data set found: its bad files with their reasons, and where the work went."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dali_pipelines.sources.image_folder import ImageFolderData


@dataclass
class VerifyReport:
    """Result of verifying a data set: bad files with reasons, and where the work went."""

    data: ImageFolderData
    bad: dict[str, str] = field(default_factory=dict)  # path -> reason, in data order
    checked: int = 0  # files read this time
    cached: int = 0  # files whose result came from the cache

    @property
    def ok(self) -> bool:
        return not self.bad

    def clean(self) -> ImageFolderData:
        """The data set without its bad files (labels and classes unchanged)."""
        return self.data.subset([i for i, f in enumerate(self.data.files) if f not in self.bad])

    def named_bad(self) -> list[tuple[str, str]]:
        """(name, reason) per bad file; a name is relative to the data root when the file lies under it."""
        prefix = os.path.join(str(self.data.root), "")
        return [(p.removeprefix(prefix), r) for p, r in self.bad.items()]
