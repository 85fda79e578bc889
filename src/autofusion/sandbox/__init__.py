"""The sandbox: a pre-warmed zygote forks one isolated process per candidate (see SECURITY.md)."""
