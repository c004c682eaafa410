"""Zero-cost selectors: pick preferred archs before any training (PreNAS).

``select_candidates(space, "5M:11M:1M", per_bucket=1, output="candidates.json")`` runs the PreNAS
selector; :class:`IsomerStructure` is what a space provides to take part (the ViT spaces do).
"""
from raynas.selectors.buckets import ResourceBuckets, format_amount, parse_amount
from raynas.selectors.isomers import (IsomerGroup, IsomerStructure, allocate, arrangements,
                                      count_compositions)
from raynas.selectors.prenas import (Candidate, PreNASSelector, Selection, SupernetSaliency,
                                     isomer_structure_of, read_candidates, select_candidates)

__all__ = ["ResourceBuckets", "format_amount", "parse_amount", "IsomerGroup", "IsomerStructure",
           "allocate", "arrangements", "count_compositions", "Candidate", "PreNASSelector", "Selection",
           "SupernetSaliency", "isomer_structure_of", "read_candidates", "select_candidates"]
