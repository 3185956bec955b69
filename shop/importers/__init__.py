"""Bringing another shop across: ``manage.py import_from dujiaoka|acg-faka``.

Readers (``sqldump``: a dump file; ``mysql``: a live database) give rows;
source adapters (``dujiaoka``, ``acgfaka``) turn them into the records of
``records``; the writers (``catalogue``, ``history``, ``stock``) bring those
in through the shop's own services; ``run`` puts the steps in order and
``report`` says what happened. Kinds of product the shop cannot hold yet are
counted by ``pending_kinds``.
"""
