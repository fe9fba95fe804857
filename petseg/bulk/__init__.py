"""`petseg predict` over many photos: the photos found (``photos``), where they go
(``targets``), the run itself (``predict``), what it did (``tally``, ``journal``) and the COCO
file it writes (``coco``). Needs only petseg.serving's instance description from the rest."""
