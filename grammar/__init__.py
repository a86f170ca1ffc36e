"""The `.opt` grammar, shipped as `optlang.grammar` (see pyproject's package-dir)."""
