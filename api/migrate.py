"""`python -m api.migrate`: upgrade the database named by DATABASE_URL to the latest schema."""

from api.db import migrate

if __name__ == "__main__":
    migrate()
    print("database schema is up to date")
