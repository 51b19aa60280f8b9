from .text_person_retriever import TextPersonRetriever

__all__ = ['TextPersonRetriever']
