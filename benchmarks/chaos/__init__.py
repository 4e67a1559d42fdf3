"""`make chaos`: the whole stack under one fault at a time, with what got stored counted from PostgreSQL."""
