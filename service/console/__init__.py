"""The admin console: server-rendered pages over the admin API's domain functions (docs/console.md)."""
