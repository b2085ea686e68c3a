"""Documents and knowledge: files a user attaches to a conversation or puts in a collection,
converted (convert), cut into chunks (chunking), embedded (embedding) by the knowledge
queue's workers (ingest), and searched for a turn's question (search), their passages given
to the model with numbered sources."""
