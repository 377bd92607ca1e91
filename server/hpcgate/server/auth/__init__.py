"""Who the caller is: access tokens, the client registry, scopes, and the auth check."""
