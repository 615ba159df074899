"""Integration tests of the Graph simulator, driven through the real msgraph-sdk."""
