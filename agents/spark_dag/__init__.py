"""spark_dag"""
