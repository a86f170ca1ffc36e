"""Text to AST: the Lark parser and the tree-to-AST transform."""
