"""Log ingestion: tailing, schemas, pipelines and checkpoints."""
