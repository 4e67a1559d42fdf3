"""One credential per component, applied to Redis and PostgreSQL (`tiktok-service access`).

* `redis_users` -- idempotent `ACL SETUSER` of each component's user, rules from
  `tiktok_service.domain.access`, saved to Redis' ACL file when it has one.
* `database_logins` -- the migrations (which create the NOLOGIN group roles and their
  grants), then one login per component with its password.
* `main` -- the command: settings in, both of the above, a line per user out.
"""
