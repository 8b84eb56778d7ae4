"""The penguins pipeline: plain functions on DataFrames and paths, wired into DAGs by `airflow/dags/`."""
