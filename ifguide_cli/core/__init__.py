"""The IF-Guide pipeline core: one module per paper step, no CLI code here."""
