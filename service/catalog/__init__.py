"""service.catalog"""
