"""hetero_pipeline"""
