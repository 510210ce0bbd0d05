"""The API actor: Litestar under uvicorn. Commits submissions, then tells the scheduler; reads go to PostgreSQL."""
