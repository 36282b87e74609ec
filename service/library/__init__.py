"""service.library"""
