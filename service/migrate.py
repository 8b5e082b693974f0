"""`python -m service.migrate`: upgrade the database named by DATABASE_URL to the latest schema."""

from service.db import migrate

if __name__ == "__main__":
    migrate()
    print("database schema is up to date")
