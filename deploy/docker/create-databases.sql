create database invoicing;
create database rules;
create database credits;
create database payments;
