"""The ``attributes`` every llmfleet.serve module documents (as ``community.general.attributes`` does).

``extends_documentation_fragment: [llmfleet.serve.attributes]`` gives the standard descriptions and the
support all our modules share: full check mode, no diff mode, idempotent. A module adds its own
``details`` (or a different ``support``) under ``attributes:``; its entries are merged over these.
``llmfleet.serve.attributes.facts`` adds the ``facts`` attribute for modules that return ``ansible_facts``.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in diff mode).
    support: none
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
"""

    FACTS = r"""
options: {}
attributes:
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
"""
