"""The French web consoles, page by page (registered by :mod:`regulator.web.consoles`)."""
