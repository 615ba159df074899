"""Graph access: the only package that imports msgraph/kiota; everything else sees dicts and app errors."""
